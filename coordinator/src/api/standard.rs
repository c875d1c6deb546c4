//! The standard gRPC services beside Vantage's own: server reflection (v1
//! and v1alpha, from `vantage_proto::FILE_DESCRIPTOR_SET`, so `grpcurl`
//! and friends work without .proto files) and health (`grpc.health.v1`,
//! every Vantage service and the server as a whole reported SERVING).

use tonic::transport::server::Router;
use tonic_reflection::server::{v1, v1alpha, Builder};
use vantage_proto::v1::{
    admin_service_server::AdminServiceServer, agent_service_server::AgentServiceServer,
    query_service_server::QueryServiceServer,
};

use super::{admin::AdminApi, agent::AgentApi, query::QueryApi};

fn builder() -> Builder<'static> {
    Builder::configure()
        .register_encoded_file_descriptor_set(vantage_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Reflection (`grpc.reflection.v1`) over the Vantage and health protocols.
pub fn reflection_v1(
) -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, tonic_reflection::server::Error>
{
    builder().build_v1()
}

/// The same for clients that still speak `grpc.reflection.v1alpha`.
pub fn reflection_v1alpha() -> Result<
    v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>,
    tonic_reflection::server::Error,
> {
    builder().build_v1alpha()
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

/// Adds health and reflection to a tonic router. The descriptor sets are
/// compiled in (and checked by a test), so reflection cannot fail to build
/// in practice; if it ever does, it is logged and left out.
pub async fn standard_services<L>(router: Router<L>) -> Router<L> {
    let mut router = router.add_service(health().await);
    match (reflection_v1(), reflection_v1alpha()) {
        (Ok(a), Ok(b)) => router = router.add_service(a).add_service(b),
        (Err(e), _) | (_, Err(e)) => tracing::error!("gRPC reflection unavailable: {e}"),
    }
    router
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    #[tokio::test]
    async fn health_and_reflection_answer_over_grpc() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder().add_service(super::health().await);
        let router = router
            .add_service(super::reflection_v1().unwrap())
            .add_service(super::reflection_v1alpha().unwrap());
        tokio::spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();

        let mut health = HealthClient::new(ch.clone());
        for service in ["", "vantage.v1.AgentService", "vantage.v1.QueryService"] {
            let r = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.status, ServingStatus::Serving as i32, "{service}");
        }

        let mut refl = ServerReflectionClient::new(ch);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = refl
            .server_reflection_info(tokio_stream::iter(vec![req]))
            .await
            .unwrap()
            .into_inner();
        let first = answers.next().await.unwrap().unwrap();
        let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
            panic!("unexpected reflection answer {first:?}");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            "vantage.v1.AgentService",
            "vantage.v1.AdminService",
            "vantage.v1.QueryService",
            "grpc.health.v1.Health",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    }
}
