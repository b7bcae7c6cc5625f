//! Copy a file with the best engine this kernel offers (copy_file_range, which
//! may share blocks on file systems that reflink, then sendfile, splice, read/write).
//!
//! ```text
//! cargo run -p zcopy --example copy_file -- SRC DST
//! cargo run -p zcopy --example copy_file          # copies a 3 MiB sample and checks it
//! ```

use std::fs::File;
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let (src_path, dst_path) = match &args[..] {
        [src, dst] => (src.into(), dst.into()),
        [] => {
            let src = dir.path().join("sample");
            let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 7 + i / 4093) as u8).collect();
            File::create(&src)?.write_all(&data)?;
            (src, dir.path().join("copy"))
        }
        _ => return Err("usage: copy_file [SRC DST]".into()),
    };

    let src = File::open(&src_path)?;
    let dst = File::create(&dst_path)?;
    let report = zcopy::copy(&src, &dst)?;

    // Check the copy byte for byte.
    if std::fs::read(&src_path)? != std::fs::read(&dst_path)? {
        return Err("the copy differs from the source".into());
    }
    println!(
        "copy_file: {} bytes by {}, identical",
        report.bytes,
        report.short()
    );
    Ok(())
}
