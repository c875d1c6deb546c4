//! Compiles proto/vantage/v1/*.proto in pure Rust (protox), so no system
//! `protoc` is needed.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["vantage/v1/vantage.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".vantage.v1.SignedResult")
        .compile_fds(fds)?;
    Ok(())
}
