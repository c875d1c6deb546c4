//! The standard gRPC services beside Vantage's own: server reflection (from
//! `vantage_proto::FILE_DESCRIPTOR_SET`) and health (`grpc.health.v1`, every
//! Vantage service and the server as a whole reported SERVING).

use vantage_proto::v1::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
    query_service_server::QueryServiceServer,
};

use crate::api::{admin::AdminApi, agent::AgentApi, query::QueryApi};

/// Reflection (v1) over the Vantage protocol and the health protocol.
pub fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(vantage_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// `grpc.health.v1.Health`, reporting every Vantage service as serving.
pub async fn health(
) -> tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health> {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter.set_serving::<AgentServiceServer<AgentApi>>().await;
    reporter.set_serving::<AdminServiceServer<AdminApi>>().await;
    reporter.set_serving::<QueryServiceServer<QueryApi>>().await;
    service
}
