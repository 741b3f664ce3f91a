//! `relay`: the ElevenLabs personalization webhook service and its admin CLI ([`relay_app`]).

/// mimalloc rather than glibc's malloc: under load, glibc's allocator was 9 % of the service's
/// CPU (`perf`, issue 17); mimalloc's thread-local free lists suit the per-request allocations of
/// the HTTP workers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    relay_app::main()
}
