//! Receive a TCP stream into a file with `splice(2)`: socket → pipe → file, the
//! bytes never enter this process.
//!
//! ```text
//! cargo run -p zcopy --example recv_splice -- 127.0.0.1:9000 OUT   # one sender, then exit
//! cargo run -p zcopy --example recv_splice                         # a local sender, checked
//! ```

use std::fs::File;
use std::io::Write;
use std::net::{TcpListener, TcpStream};

use zcopy::{CopyOptions, EngineKind};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = tempfile::tempdir()?;
    let (listener, out_path, sample) = match &args[..] {
        [addr, out] => (TcpListener::bind(addr)?, out.into(), None),
        [] => (
            TcpListener::bind("127.0.0.1:0")?,
            dir.path().join("received"),
            Some(
                (0..5u32 << 20)
                    .map(|i| (i * 3 + i / 8191) as u8)
                    .collect::<Vec<u8>>(),
            ),
        ),
        _ => return Err("usage: recv_splice [ADDR OUT]".into()),
    };
    let sender = sample.clone().map(|data| {
        let addr = listener.local_addr().expect("bound");
        std::thread::spawn(move || TcpStream::connect(addr)?.write_all(&data))
    });

    let (conn, peer) = listener.accept()?;
    let out = File::create(&out_path)?;
    // Everything until the sender closes, splice first (read/write if it can't).
    let report = zcopy::copy_with(&conn, &out, &CopyOptions::new().engine(EngineKind::Splice))?;
    println!("{peer}: {} bytes by {}", report.bytes, report.short());

    if let (Some(sender), Some(data)) = (sender, sample) {
        sender.join().expect("sender thread")?;
        if std::fs::read(&out_path)? != data {
            return Err("the file differs from what was sent".into());
        }
        println!("recv_splice: {} bytes, identical", report.bytes);
    }
    Ok(())
}
