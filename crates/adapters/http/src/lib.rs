//! HTTP adapter: the ElevenLabs webhooks on actix-web (our personalization contract,
//! ElevenLabs' own conversation-initiation webhook, the post-call webhook).
//!
//! This crate owns everything HTTP: routing, the Bearer header, content type, body size, JSON
//! parsing and validation, and the one mapping from use-case outcomes to statuses and the
//! contract's error envelope. It knows the use case and domain types, never a database or cache.

mod access;
pub mod admin;
mod auth;
mod body;
mod client;
mod connection;
mod error;
mod memory;
mod ops;
mod personalization;
mod post_call;
mod root_span;
mod throttle;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_service::IntoServiceFactory as _;
use actix_web::dev::Server;
use actix_web::middleware::Condition;
use actix_web::{App, web};
use relay_observability::Metrics;
use relay_usecase::post_call::RecordCall;
use relay_usecase::{PersonalizeCall, Readiness};
use tracing_actix_web::TracingLogger;

pub use access::Access;
pub use client::{InvalidProxy, TrustedProxies};
pub use error::{Allowed, ApiError};
pub use personalization::{INITIATION_PATH, MAX_BODY_BYTES, PERSONALIZATION_PATH};
pub use post_call::{MAX_POST_CALL_BODY_BYTES, POST_CALL_PATH, SIGNATURE_HEADER};
pub use throttle::ThrottleSettings;

/// The use cases behind the webhook routes.
#[derive(Clone)]
pub struct Webhooks {
    /// Both personalization routes (our contract and ElevenLabs' initiation webhook).
    pub personalize: Arc<PersonalizeCall>,
    /// When set, each worker thread serves the personalization routes with its own use case,
    /// built on that thread ([`Webhooks::per_worker`]).
    per_worker: Option<PerWorker>,
    /// The post-call webhook.
    pub record_call: Arc<RecordCall>,
    /// Client addresses and the failed-authentication throttle, shared by the routes.
    pub access: Arc<Access>,
    memory: web::Data<memory::BodyMemory>,
}

impl Webhooks {
    /// The routes' use cases, and how they tell clients apart and throttle their failures.
    pub fn new(
        personalize: Arc<PersonalizeCall>,
        record_call: Arc<RecordCall>,
        access: Arc<Access>,
    ) -> Self {
        Self {
            personalize,
            per_worker: None,
            record_call,
            access,
            memory: web::Data::new(memory::BodyMemory::default()),
        }
    }

    /// Serves the personalization routes with a use case `build` makes on each worker thread,
    /// when the worker starts: the connections it opens are driven by that thread's runtime,
    /// so a request's I/O is woken on the thread that serves it, with no hand-off between
    /// threads.
    #[must_use]
    pub fn per_worker(mut self, build: PerWorker) -> Self {
        self.per_worker = Some(build);
        self
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("personalize", &self.personalize)
            .field("per_worker", &self.per_worker.is_some())
            .field("record_call", &self.record_call)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Builds a worker thread's own personalization use case ([`Webhooks::per_worker`]).
pub type PerWorker = Arc<dyn Fn() -> PersonalizeCall + Send + Sync>;

/// Paths of the operations routes.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness route.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus scrape route.
pub const METRICS_PATH: &str = "/metrics";

/// What the HTTP adapter serves and records besides the webhook: metrics and readiness.
#[derive(Debug, Clone)]
pub struct Operations {
    /// Request metrics are recorded here; `GET /metrics` renders it.
    pub metrics: Arc<Metrics>,
    /// `GET /readyz` asks it.
    pub readiness: Arc<Readiness>,
    /// Give each webhook request a server span (tracing-actix-web's root span, continuing the
    /// caller's `traceparent`). Only worth it when traces are exported.
    pub trace_requests: bool,
}

/// Registers the routes; used by [`server`] and by tests through `actix_web::test`.
pub fn configure(
    webhooks: Webhooks,
    operations: Operations,
) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let personalize = match &webhooks.per_worker {
            Some(build) => Arc::new(build()),
            None => webhooks.personalize,
        };
        cfg.app_data(web::Data::from(personalize))
            .app_data(web::Data::from(webhooks.record_call))
            .app_data(webhooks.memory)
            .app_data(web::Data::from(webhooks.access))
            .app_data(web::Data::from(operations.metrics))
            .app_data(web::Data::from(operations.readiness))
            .service(
                web::resource(PERSONALIZATION_PATH)
                    // Only the webhooks get a server span: probes and scrapes stay out of traces.
                    .wrap(Condition::new(
                        operations.trace_requests,
                        TracingLogger::<root_span::WebhookRootSpan>::new(),
                    ))
                    .route(web::post().to(personalization::contract))
                    .default_service(error::method_not_allowed(Allowed::Post)),
            )
            .service(
                web::resource(INITIATION_PATH)
                    .wrap(Condition::new(
                        operations.trace_requests,
                        TracingLogger::<root_span::WebhookRootSpan>::new(),
                    ))
                    .route(web::post().to(personalization::initiation))
                    .default_service(error::method_not_allowed(Allowed::Post)),
            )
            .service(
                web::resource(POST_CALL_PATH)
                    .wrap(Condition::new(
                        operations.trace_requests,
                        TracingLogger::<root_span::WebhookRootSpan>::new(),
                    ))
                    .route(web::post().to(post_call::handle))
                    .default_service(error::method_not_allowed(Allowed::Post)),
            )
            .service(
                web::resource(HEALTHZ_PATH)
                    .route(web::get().to(ops::healthz))
                    .default_service(error::method_not_allowed(Allowed::Get)),
            )
            .service(
                web::resource(READYZ_PATH)
                    .route(web::get().to(ops::readyz))
                    .default_service(error::method_not_allowed(Allowed::Get)),
            )
            .service(
                web::resource(METRICS_PATH)
                    .route(web::get().to(ops::metrics))
                    .default_service(error::method_not_allowed(Allowed::Get)),
            );
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads; `None` uses actix-server's default (one per available CPU).
    pub workers: Option<usize>,
    /// After a graceful stop, how long in-flight requests may take before their connections
    /// are closed.
    pub shutdown_timeout: Duration,
}

/// How long the first request head of a connection may take (actix-http's own deadline; every
/// later head gets the same from [`connection::Guarded`]), and how long an idle keep-alive
/// connection stays open.
const HEAD_AND_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// After a response that closes the connection, how long unread request bytes are drained
/// before the socket is shut.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds the server on an already-bound listener (bind port 0 in tests and read the port back).
///
/// It is actix-web's `HttpServer::listen`, assembled from the same parts (actix-server,
/// actix-http, the `App`) so that each connection's socket is wrapped in
/// [`connection::Guarded`]: every request head, not only a connection's first, must arrive
/// within 5 s. HTTP/1.1 only, as before.
///
/// The server does not handle signals itself: the caller decides when to stop it (after a
/// drain delay) through [`Server::handle`].
///
/// # Errors
/// The listener cannot be used.
pub fn server(
    listener: TcpListener,
    webhooks: Webhooks,
    operations: Operations,
    settings: ServerSettings,
) -> std::io::Result<Server> {
    let metrics = Arc::clone(&operations.metrics);
    listen(
        listener,
        "relay-http",
        Some(&metrics),
        settings,
        move || configure(webhooks.clone(), operations.clone()),
    )
}

/// Builds the management server ([`admin`]) on an already-bound listener: the same
/// connection rules as [`server`], the management routes only (and 404 elsewhere).
///
/// # Errors
/// The listener cannot be used.
pub fn admin_server(
    listener: TcpListener,
    api: admin::ManagementApi,
    settings: ServerSettings,
) -> std::io::Result<Server> {
    listen(listener, "relay-admin", None, settings, move || {
        admin::configure_admin(api.clone())
    })
}

/// One server: each worker's app is `App::new().configure(routes())` with the 404 fallback.
/// Slow request heads are counted into `metrics` when given (the webhook server's).
fn listen<F, C>(
    listener: TcpListener,
    name: &'static str,
    metrics: Option<&Metrics>,
    settings: ServerSettings,
    routes: F,
) -> std::io::Result<Server>
where
    F: Fn() -> C + Send + Clone + 'static,
    C: FnOnce(&mut web::ServiceConfig),
{
    use actix_service::{ServiceFactoryExt as _, fn_service, map_config};
    use actix_web::dev::AppConfig;

    let addr = listener.local_addr()?;
    let slow_heads = Arc::new(connection::SlowHeads::default());
    if let Some(metrics) = metrics {
        let slow_heads = Arc::clone(&slow_heads);
        metrics.register_http_server(move || relay_observability::HttpServerCounts {
            slow_request_heads: slow_heads.count(),
        });
    }
    let mut builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1));
    if let Some(workers) = settings.workers {
        builder = builder.workers(workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let builder = builder.listen(name, listener, move || {
        let app = App::new()
            .configure(routes())
            .default_service(web::to(error::not_found))
            .into_factory()
            .map_err(|error: actix_web::Error| error.error_response());
        let shutdown = shutdown.clone();
        let http = actix_http::HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(HEAD_AND_IDLE_TIMEOUT)
            .client_request_timeout(HEAD_AND_IDLE_TIMEOUT)
            .client_disconnect_timeout(DISCONNECT_TIMEOUT)
            .local_addr(addr)
            .finish(map_config(app, |()| AppConfig::default()));
        let slow_heads = Arc::clone(&slow_heads);
        fn_service(move |io: actix_rt::net::TcpStream| {
            let peer = io.peer_addr().ok();
            let guarded = connection::Guarded::new(io, Arc::clone(&slow_heads));
            async move { Ok((guarded, actix_http::Protocol::Http1, peer)) }
        })
        .and_then(http)
    })?;
    Ok(builder.run())
}

/// The management app as tests build it: same routes, same fallback.
#[doc(hidden)]
pub fn admin_test_app(
    api: admin::ManagementApi,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(admin::configure_admin(api))
        .default_service(web::to(error::not_found))
}

/// The app as tests build it: same routes, same fallbacks.
#[doc(hidden)]
pub fn test_app(
    webhooks: Webhooks,
    operations: Operations,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .configure(configure(webhooks, operations))
        .default_service(web::to(error::not_found))
}
