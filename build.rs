//! Embeds every file of `public/` in the binary: writes `public_files.rs`, a
//! table of `(name, bytes)` that `src/assets.rs` includes.

use std::fs;
use std::path::Path;

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let mut names: Vec<String> = fs::read_dir("public")
        .expect("public/ exists")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let mut table = String::from("pub static PUBLIC: &[(&str, &[u8])] = &[\n");
    for name in &names {
        let path = fs::canonicalize(Path::new("public").join(name)).expect("readable");
        table += &format!("    ({name:?}, include_bytes!({:?})),\n", path.display());
    }
    table += "];\n";
    fs::write(Path::new(&out).join("public_files.rs"), table).expect("write OUT_DIR");
    println!("cargo:rerun-if-changed=public");
    println!("cargo:rerun-if-changed=templates");
}
