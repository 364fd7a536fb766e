//! Compiles the protobuf definitions with protox (no protoc needed) and generates tonic code.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["redcloud/chunkserver.proto", "redcloud/files.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    // Chunk data travels as `Bytes`, so slicing a chunk into messages copies nothing.
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(descriptors)?;
    Ok(())
}
