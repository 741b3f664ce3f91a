//! The HTTP routes, in process, on the service as `relay serve` wires it (the composition root,
//! [`relay_app::Service`]) over in-memory fakes: what a caller of each route sees.

mod admin;
mod api;
mod elevenlabs;
mod operations;
mod world;
