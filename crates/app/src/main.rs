//! `relay`: the ElevenLabs personalization webhook service and its admin CLI ([`relay_app`]).

fn main() -> std::process::ExitCode {
    relay_app::main()
}
