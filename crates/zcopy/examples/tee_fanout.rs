//! One source, many outputs, as `tee(1)` does: from a pipe, `tee(2)` duplicates the
//! bytes into each output without copying them through this process.
//!
//! ```text
//! some-command | cargo run -p zcopy --example tee_fanout -- OUT1 OUT2 > OUT3
//! cargo run -p zcopy --example tee_fanout      # a local pipe and two files, checked
//! ```

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        let files = args
            .iter()
            .map(File::create)
            .collect::<Result<Vec<_>, _>>()?;
        let outputs: Vec<_> = files.iter().map(|f| f.as_fd()).collect();
        let (stdin, stdout) = (std::io::stdin(), std::io::stdout());
        let forced = zcopy::Forced::new();
        let r = zcopy::fanout::fanout(stdin.as_fd(), stdout.as_fd(), &outputs, &forced)?;
        eprintln!("{} bytes by {:?}", r.bytes, r.engine);
        return Ok(());
    }

    // Demo: a writer thread feeds a pipe; the main output is another pipe, read
    // by a thread; two files get copies.
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i * 11 + i / 4099) as u8).collect();
    let (src, mut feed) = std::io::pipe()?;
    let (mut main_r, main_w) = std::io::pipe()?;
    let feeder = {
        let data = data.clone();
        std::thread::spawn(move || feed.write_all(&data))
    };
    let reader = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut got = Vec::new();
        main_r.read_to_end(&mut got)?;
        Ok(got)
    });
    let dir = tempfile::tempdir()?;
    let paths = [dir.path().join("a"), dir.path().join("b")];
    let files = [File::create(&paths[0])?, File::create(&paths[1])?];
    let outputs = [files[0].as_fd(), files[1].as_fd()];
    let report =
        zcopy::fanout::fanout(src.as_fd(), main_w.as_fd(), &outputs, &zcopy::Forced::new())?;
    drop(main_w);
    feeder.join().expect("feeder thread")?;
    let main = reader.join().expect("reader thread")?;

    if main != data
        || paths
            .iter()
            .any(|p| std::fs::read(p).ok().as_ref() != Some(&data))
    {
        return Err("an output differs from the source".into());
    }
    let how = match &report.fallback_reason {
        None => "tee + splice".to_string(),
        Some(why) => format!("read-write ({why})"),
    };
    println!(
        "tee_fanout: {} bytes to 3 outputs by {how}, identical",
        report.bytes
    );
    Ok(())
}
