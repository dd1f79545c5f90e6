//! Compiles `tlog/v1/*.proto` with protox (pure Rust), so building needs no
//! system `protoc`. Server traits are generated only with the `server`
//! feature, which keeps the verifier's dependency tree client-only.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["tlog/v1/log.proto", "tlog/v1/gossip.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
