//! Compiles `tlog/v1/*.proto` with protox (pure Rust), so building needs no
//! system `protoc`.
//!
//! Two passes. The first generates the messages and the clients, which use
//! tonic-prost's codec. The second, only with the `server` feature (which
//! keeps the verifier's library dependency tree client-only), generates the
//! server traits alone, into `OUT_DIR/server/`, over the first pass's
//! messages and with [`RequestCodec`](crate::codec::RequestCodec), so a
//! request body that does not decode is the caller's INVALID_ARGUMENT
//! rather than tonic-prost's INTERNAL. Clients keep INTERNAL for a response
//! that does not decode: that is the server's fault, not the request's.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["tlog/v1/log.proto", "tlog/v1/gossip.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["."])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors.clone())?;
    if std::env::var_os("CARGO_FEATURE_SERVER").is_some() {
        let out_dir = PathBuf::from(std::env::var("OUT_DIR")?).join("server");
        std::fs::create_dir_all(&out_dir)?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(false)
            .out_dir(out_dir)
            .extern_path(".tlog.v1", "crate::v1")
            .codec_path("crate::codec::RequestCodec")
            .compile_fds(descriptors)?;
    }
    Ok(())
}
