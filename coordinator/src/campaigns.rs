//! Campaign runtime (work in progress): stores campaigns, runs the schedule,
//! dispatches inside and control tasks together, and computes verdicts.

use vantage_proto::v1::*;

use crate::errors::ServiceError;
use crate::state::Shared;

fn not_yet() -> ServiceError {
    ServiceError::Internal("campaigns are not available in this build yet".into())
}

pub async fn create(_s: &Shared, _r: CreateCampaignRequest) -> Result<CreateCampaignResponse, ServiceError> {
    Err(not_yet())
}

pub fn list(_s: &Shared) -> Result<ListCampaignsResponse, ServiceError> {
    Err(not_yet())
}

pub fn status(_s: &Shared, _id: &str) -> Result<CampaignStatusResponse, ServiceError> {
    Err(not_yet())
}

pub fn set_state(_s: &Shared, _id: &str, _action: &str) -> Result<String, ServiceError> {
    Err(not_yet())
}

pub fn verdicts(_s: &Shared, _id: &str) -> Result<VerdictsResponse, ServiceError> {
    Err(not_yet())
}
