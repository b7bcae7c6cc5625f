//! Written only from the zcopy README and crate docs: copies a file to a socket and
//! a socket to a file, with the best engine and with each engine tried first, and
//! checks every byte. Exits non-zero on the first difference.
//!
//! Run: `cargo run --manifest-path tests/outside/Cargo.toml --target-dir target/outside`

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream};

use zcopy::{CopyOptions, EngineKind};

fn tcp_pair() -> std::io::Result<(TcpStream, TcpStream)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let client = TcpStream::connect(listener.local_addr()?)?;
    let (server, _) = listener.accept()?;
    Ok((server, client))
}

fn temp_file(name: &str) -> std::io::Result<File> {
    let path = std::env::temp_dir().join(format!("zcopy-outside-{}-{name}", std::process::id()));
    let f = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(f)
}

/// File → socket: the whole file from byte 0.
fn file_to_socket(data: &[u8], opts: &CopyOptions) -> Result<String, Box<dyn std::error::Error>> {
    let mut file = temp_file("src")?;
    file.write_all(data)?;
    let (server, mut client) = tcp_pair()?;
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        client.read_to_end(&mut got).map(|_| got)
    });
    let report = zcopy::copy_with(&file, &server, &opts.clone().offset(0))?;
    drop(server);
    let got = reader.join().expect("reader")?;
    if got != data {
        return Err(format!("file → socket: bytes differ ({})", report.describe()).into());
    }
    Ok(report.describe())
}

/// Socket → file: until the sender closes.
fn socket_to_file(data: &[u8], opts: &CopyOptions) -> Result<String, Box<dyn std::error::Error>> {
    let (server, mut client) = tcp_pair()?;
    let sent = data.to_vec();
    let writer = std::thread::spawn(move || client.write_all(&sent));
    let mut file = temp_file("dst")?;
    let report = zcopy::copy_with(&server, &file, opts)?;
    writer.join().expect("writer")?;
    let mut got = Vec::new();
    file.rewind()?;
    file.read_to_end(&mut got)?;
    if got != data {
        return Err(format!("socket → file: bytes differ ({})", report.describe()).into());
    }
    Ok(report.describe())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data: Vec<u8> = (0..(2u32 << 20) + 77)
        .map(|i| (i * 17 + i / 1021) as u8)
        .collect();
    let mut runs = vec![("best".to_string(), CopyOptions::new())];
    for kind in EngineKind::ALL {
        runs.push((kind.to_string(), CopyOptions::new().engine(kind)));
    }
    for (name, opts) in &runs {
        let out = file_to_socket(&data, opts)?;
        let inn = socket_to_file(&data, opts)?;
        println!("{name:>12}: file → socket: {out}; socket → file: {inn}");
    }
    println!(
        "outside: {} runs each way, every byte identical",
        runs.len()
    );
    Ok(())
}
