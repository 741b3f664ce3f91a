//! Logs and traces.
//!
//! Logs: `tracing` events to stderr, filtered by `RUST_LOG`; JSON (one object per line, with the
//! OpenTelemetry trace and span ids when tracing is on) when stderr is not a terminal or
//! `LOG_FORMAT=json`, human-readable on a terminal or with `LOG_FORMAT=pretty`.
//!
//! Traces (only `relay serve`): exported with OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT`
//! or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set. Unset, no exporter and no OpenTelemetry layer
//! run, and the webhook gets no server span; the use case's and the dependency calls' `tracing`
//! spans remain (cheap: no export, no ids). The OpenTelemetry SDK reads the other standard variables itself
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_BSP_*`).

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::{ConfigError, Env};

/// The targets whose spans and events reach the trace: this workspace's crates (`relay_http`,
/// `relay_usecase`, `relay_observability`, ...) and the request log (`relay::request`), all
/// prefixed `relay`. Nothing else, in particular not the exporter's own HTTP client.
const TRACED_TARGET: &str = "relay";

/// actix-http's target for a request it refuses itself (a malformed request line or header, too
/// many or too large headers: 400 or 431 with an empty body; the framework gives no way to
/// answer these with the JSON envelope). It logs them at ERROR, but a client's garbage is not
/// the service failing: they are counted instead ([`malformed_requests`]) and kept out of the
/// log unless `RUST_LOG` names `actix_http`.
const ACTIX_DISPATCHER: &str = "actix_http::h1::dispatcher";

static MALFORMED_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Requests the HTTP server refused before any route saw them (see [`ACTIX_DISPATCHER`]).
pub(crate) fn malformed_requests() -> u64 {
    MALFORMED_REQUESTS.load(Ordering::Relaxed)
}

/// Counts actix-http's error events.
struct CountMalformed;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountMalformed {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        MALFORMED_REQUESTS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The log filter: `RUST_LOG`, or `default`; actix-http's per-request errors are off unless the
/// filter names `actix_http` itself.
fn log_filter(rust_log: Option<&str>, default: &str) -> EnvFilter {
    let filter = rust_log
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    if rust_log.is_some_and(|directives| directives.contains("actix_http")) {
        return filter;
    }
    match format!("{ACTIX_DISPATCHER}=off").parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    }
}

/// Where and how traces are exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceExport {
    /// `http/protobuf` (default) or `http/json`.
    protocol: Protocol,
}

impl TraceExport {
    /// Reads the standard variables. `None`: tracing is off (no endpoint, `OTEL_SDK_DISABLED`,
    /// or `OTEL_TRACES_EXPORTER=none`).
    ///
    /// # Errors
    /// An exporter or protocol this build does not have.
    pub(crate) fn from_env<F: Fn(&str) -> Option<String>>(
        env: &Env<F>,
    ) -> Result<Option<Self>, ConfigError> {
        if env
            .get("OTEL_SDK_DISABLED")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        {
            return Ok(None);
        }
        match env.get("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "OTEL_TRACES_EXPORTER",
                    reason: format!("expected otlp or none (got {other:?})"),
                });
            }
        }
        if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
            && env.get("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        let (name, value) = match env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(v) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    .unwrap_or_else(|| "http/protobuf".into()),
            ),
        };
        let protocol = match value.trim() {
            "http/protobuf" => Protocol::HttpBinary,
            "http/json" => Protocol::HttpJson,
            "grpc" => {
                return Err(ConfigError::Invalid {
                    name,
                    reason: "grpc is not built in; use http/protobuf (the collector's port 4318)"
                        .into(),
                });
            }
            other => {
                return Err(ConfigError::Invalid {
                    name,
                    reason: format!("expected http/protobuf or http/json (got {other:?})"),
                });
            }
        };
        Ok(Some(Self { protocol }))
    }
}

/// What must be flushed before the process exits.
#[derive(Debug)]
pub(crate) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether traces are exported.
    pub(crate) fn tracing_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Exports the spans still buffered and stops the exporter. Call outside the async runtime,
    /// after the server has stopped, so the last requests' spans are not lost.
    pub(crate) fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush the last spans");
        }
    }
}

/// Installs the global subscriber, with the trace exporter when `export` is set. The service
/// logs `info` by default, admin commands only warnings (their results go to stdout).
///
/// Must run before the tokio runtime starts: the OTLP exporter's blocking HTTP client must not
/// be built inside it.
///
/// # Errors
/// The exporter could not be built from its variables (a malformed endpoint, say).
pub(crate) fn init(serving: bool, export: Option<TraceExport>) -> Result<Telemetry, ConfigError> {
    let provider = export.map(build_provider).transpose()?;
    let default = if serving { "info" } else { "warn" };
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default);
    let json = match std::env::var("LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("pretty") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let logs = if json {
        json_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_opentelemetry_ids(true)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let traces = provider.as_ref().map(|provider| {
        // Targets match by prefix: `relay` covers `relay_http`, `relay::request`, ...
        let targets = Targets::new().with_target(TRACED_TARGET, LevelFilter::INFO);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("relay"))
            .with_filter(targets)
    });
    let malformed = CountMalformed
        .with_filter(Targets::new().with_target(ACTIX_DISPATCHER, LevelFilter::ERROR));
    // The trace layer first: the log layer reads the span ids it assigns.
    tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .with(malformed)
        .init();
    Ok(Telemetry { provider })
}

fn build_provider(export: TraceExport) -> Result<SdkTracerProvider, ConfigError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(export.protocol)
        .build()
        .map_err(|e| ConfigError::Invalid {
            name: "OTEL_EXPORTER_OTLP_ENDPOINT",
            reason: e.to_string(),
        })?;
    let mut resource = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    // The SDK reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; name the service when
    // neither does.
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    if !named {
        resource = resource.with_service_name("relay");
    }
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn export(pairs: &[(&str, &str)]) -> Result<Option<TraceExport>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        TraceExport::from_env(&Env(move |name: &str| map.get(name).cloned()))
    }

    const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");

    #[test]
    fn actix_per_request_errors_are_off_unless_rust_log_names_actix_http() {
        let shown = |rust_log: Option<&str>| log_filter(rust_log, "info").to_string();
        assert!(
            shown(None).contains("actix_http::h1::dispatcher=off"),
            "{}",
            shown(None)
        );
        assert!(shown(Some("relay=debug,info")).contains("actix_http::h1::dispatcher=off"));
        assert!(!shown(Some("info,actix_http=trace")).contains("=off"));
        // A RUST_LOG that does not parse falls back to the default, as before.
        assert!(shown(Some("==")).contains("info"), "{}", shown(Some("==")));
    }

    #[test]
    fn no_endpoint_means_no_tracing() {
        assert_eq!(export(&[]).unwrap(), None);
        assert_eq!(
            export(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]).unwrap(),
            None
        );
    }

    #[test]
    fn an_endpoint_turns_tracing_on_with_protobuf_by_default() {
        assert_eq!(
            export(&[ENDPOINT]).unwrap(),
            Some(TraceExport {
                protocol: Protocol::HttpBinary
            })
        );
        let traces_only = (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        );
        assert!(export(&[traces_only]).unwrap().is_some());
    }

    #[test]
    fn the_traces_protocol_overrides_the_general_one() {
        let chosen = export(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
        ])
        .unwrap();
        assert_eq!(
            chosen,
            Some(TraceExport {
                protocol: Protocol::HttpJson
            })
        );
    }

    #[test]
    fn disabled_sdk_or_none_exporter_turn_tracing_off() {
        assert_eq!(
            export(&[ENDPOINT, ("OTEL_SDK_DISABLED", "TRUE")]).unwrap(),
            None
        );
        assert_eq!(
            export(&[ENDPOINT, ("OTEL_TRACES_EXPORTER", "none")]).unwrap(),
            None
        );
    }

    #[test]
    fn grpc_and_unknown_values_are_configuration_errors_naming_the_variable() {
        let err = export(&[ENDPOINT, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_PROTOCOL is invalid")
        );
        assert!(err.to_string().contains("4318"), "{err}");
        let err = export(&[
            ENDPOINT,
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "carrier-pigeon"),
        ])
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL is invalid")
        );
        let err = export(&[ENDPOINT, ("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("OTEL_TRACES_EXPORTER is invalid")
        );
    }
}
