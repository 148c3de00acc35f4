//! Compiles `proto/mapping.proto` with protox (a pure-Rust protobuf compiler), so building
//! softvpc needs no `protoc` install.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/mapping.proto");
    let fds = protox::compile(["proto/mapping.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
