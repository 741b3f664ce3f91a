//! The management API: a second listener (`ADMIN_LISTEN_ADDR`) for the system that owns the
//! contacts and for operators, never exposed through the webhook ingress. Every route needs a
//! management key (`Authorization: Bearer rmk_...`) and calls one [`Management`] operation, the
//! same the CLI calls.

mod guard;
mod idempotency;
mod import;
mod json;
mod routes;

use std::sync::Arc;

use actix_web::web;
use relay_observability::Metrics;
use relay_ports::IdempotencyCache;
use relay_usecase::Management;

pub use guard::{Guard, RequestBudget};
pub use idempotency::IDEMPOTENCY_TTL;
pub use routes::MAX_ADMIN_BODY_BYTES;

use crate::error::{self, Allowed};

/// The prefix of every management route.
pub const ADMIN_PREFIX: &str = "/admin/v1";

/// What the management listener serves with.
#[derive(Clone)]
pub struct ManagementApi {
    /// The operations.
    pub manage: Arc<Management>,
    /// Authentication, throttling, request budgets.
    pub guard: Arc<Guard>,
    /// Requests are counted here (route label `admin_*`).
    pub metrics: Arc<Metrics>,
    /// The answers of creating requests, by `Idempotency-Key`.
    pub idempotency: Arc<dyn IdempotencyCache>,
}

impl std::fmt::Debug for ManagementApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagementApi")
            .field("manage", &self.manage)
            .finish_non_exhaustive()
    }
}

/// Registers the management routes under [`ADMIN_PREFIX`].
pub fn configure_admin(api: ManagementApi) -> impl FnOnce(&mut web::ServiceConfig) {
    use routes as r;
    move |cfg| {
        cfg.app_data(web::Data::from(api.manage))
            .app_data(web::Data::from(api.guard))
            .app_data(web::Data::from(api.metrics))
            .app_data(web::Data::from(api.idempotency))
            .service(
                web::scope(ADMIN_PREFIX)
                    .service(
                        web::resource("/organizations")
                            .route(web::get().to(r::list_orgs))
                            .route(web::post().to(r::create_org))
                            .default_service(error::method_not_allowed(Allowed::GetPost)),
                    )
                    .service(
                        web::resource("/organizations/{org}")
                            .route(web::get().to(r::get_org))
                            .route(web::patch().to(r::update_org))
                            .route(web::delete().to(r::delete_org))
                            .default_service(error::method_not_allowed(Allowed::GetPatchDelete)),
                    )
                    .service(
                        web::resource("/organizations/{org}/secrets")
                            .route(web::get().to(r::list_secrets))
                            .route(web::post().to(r::issue_secret))
                            .default_service(error::method_not_allowed(Allowed::GetPost)),
                    )
                    .service(
                        web::resource("/organizations/{org}/secrets/{secret}")
                            .route(web::delete().to(r::revoke_secret))
                            .default_service(error::method_not_allowed(Allowed::Delete)),
                    )
                    .service(
                        web::resource("/organizations/{org}/webhook-secret")
                            .route(web::put().to(r::set_webhook_secret))
                            .default_service(error::method_not_allowed(Allowed::Put)),
                    )
                    .service(
                        web::resource("/organizations/{org}/keys")
                            .route(web::get().to(r::list_org_keys))
                            .route(web::post().to(r::create_org_key))
                            .default_service(error::method_not_allowed(Allowed::GetPost)),
                    )
                    .service(
                        web::resource("/organizations/{org}/contacts")
                            .route(web::get().to(r::list_contacts))
                            .route(web::post().to(r::create_contact))
                            .default_service(error::method_not_allowed(Allowed::GetPost)),
                    )
                    .service(
                        web::resource("/organizations/{org}/contacts/import")
                            .route(web::post().to(import::import))
                            .default_service(error::method_not_allowed(Allowed::Post)),
                    )
                    .service(
                        web::resource("/organizations/{org}/contacts/by-external-id/{external_id}")
                            .route(web::put().to(r::put_contact))
                            .default_service(error::method_not_allowed(Allowed::Put)),
                    )
                    .service(
                        web::resource("/organizations/{org}/contacts/{contact}")
                            .route(web::get().to(r::get_contact))
                            .route(web::patch().to(r::update_contact))
                            .route(web::delete().to(r::delete_contact))
                            .default_service(error::method_not_allowed(Allowed::GetPatchDelete)),
                    )
                    .service(
                        web::resource("/organizations/{org}/calls")
                            .route(web::get().to(r::list_calls))
                            .default_service(error::method_not_allowed(Allowed::Get)),
                    )
                    .service(
                        web::resource("/organizations/{org}/calls/{call}")
                            .route(web::get().to(r::get_call))
                            .default_service(error::method_not_allowed(Allowed::Get)),
                    )
                    .service(
                        web::resource("/keys")
                            .route(web::get().to(r::list_operator_keys))
                            .route(web::post().to(r::create_operator_key))
                            .default_service(error::method_not_allowed(Allowed::GetPost)),
                    )
                    .service(
                        web::resource("/keys/{key}")
                            .route(web::delete().to(r::revoke_key))
                            .default_service(error::method_not_allowed(Allowed::Delete)),
                    )
                    .service(
                        web::resource("/audit")
                            .route(web::get().to(r::audit))
                            .default_service(error::method_not_allowed(Allowed::Get)),
                    ),
            );
    }
}
