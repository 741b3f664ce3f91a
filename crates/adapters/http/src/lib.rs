//! HTTP adapter: the ElevenLabs personalization webhook on actix-web.
//!
//! This crate owns everything HTTP: routing, the Bearer header, content type, body size, JSON
//! parsing and validation, and the one mapping from use-case outcomes to statuses and the
//! contract's error envelope. It knows the use case and domain types, never a database or cache.

mod auth;
mod error;
mod personalization;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use relay_usecase::PersonalizeCall;

pub use error::ApiError;
pub use personalization::{MAX_BODY_BYTES, PERSONALIZATION_PATH};

/// Registers the routes; used by [`server`] and by tests through `actix_web::test`.
pub fn configure(personalize: Arc<PersonalizeCall>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::from(personalize)).service(
            web::resource(PERSONALIZATION_PATH)
                .route(web::post().to(personalization::handle))
                .default_service(web::to(error::method_not_allowed)),
        );
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// Worker threads; `None` uses actix-web's default (one per physical core).
    pub workers: Option<usize>,
}

/// Builds the server on an already-bound listener (bind port 0 in tests and read the port back).
///
/// # Errors
/// The listener cannot be used.
pub fn server(
    listener: TcpListener,
    personalize: Arc<PersonalizeCall>,
    settings: ServerSettings,
) -> std::io::Result<Server> {
    let mut server = HttpServer::new(move || {
        App::new()
            .configure(configure(Arc::clone(&personalize)))
            .default_service(web::to(error::not_found))
    })
    .listen(listener)?;
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// The app as tests build it: same routes, same fallbacks.
#[doc(hidden)]
pub fn test_app(
    personalize: Arc<PersonalizeCall>,
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
        .configure(configure(personalize))
        .default_service(web::to(error::not_found))
}
