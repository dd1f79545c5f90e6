//! `verifier`: check a data-flow and code-release transparency log without
//! trusting its operator.

fn main() -> std::process::ExitCode {
    verifier::cli::main()
}
