//! Serve one file to every TCP client that connects, by `sendfile(2)`: the kernel
//! sends the page cache's bytes, nothing is copied through this process.
//!
//! ```text
//! cargo run -p zcopy --example serve_file -- FILE 127.0.0.1:8000   # serve until ^C
//! cargo run -p zcopy --example serve_file                          # one client, checked
//! ```
//!
//! To a peer whose receive queue lives in this kernel (loopback, a container on a
//! veth), bytes sent by reference remain references to the file's pages until the
//! peer reads them: a server that can't rule out the file changing meanwhile plans
//! with [`zcopy::Plan::for_peer`], which then copies instead. This example serves a
//! file nothing else writes.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use zcopy::{CopyOptions, EngineKind};

/// Sends all of `file` to `client`, sendfile first.
fn send(file: &File, client: &TcpStream) -> Result<zcopy::Report, zcopy::TransferError> {
    let len = file
        .metadata()
        .map_err(zcopy::TransferError::Inspect)?
        .len();
    let opts = CopyOptions::new()
        .offset(0)
        .len(len)
        .engine(EngineKind::Sendfile);
    zcopy::copy_with(file, client, &opts)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [path, addr] = &args[..] {
        let file = File::open(path)?;
        let listener = TcpListener::bind(addr)?;
        println!("serving {path} on {}", listener.local_addr()?);
        for client in listener.incoming() {
            let client = client?;
            match send(&file, &client) {
                Ok(r) => println!(
                    "{}: {} bytes by {}",
                    client.peer_addr()?,
                    r.bytes,
                    r.short()
                ),
                Err(e) => eprintln!("{}: {e}", client.peer_addr()?),
            }
        }
        return Ok(());
    }

    // Demo: a 4 MiB file, one client on loopback, every byte checked.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i * 13 + i / 65521) as u8)
        .collect();
    let mut file = tempfile::tempfile()?;
    file.write_all(&data)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let client = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let mut got = Vec::new();
        TcpStream::connect(addr)?.read_to_end(&mut got)?;
        Ok(got)
    });
    let (conn, _) = listener.accept()?;
    let report = send(&file, &conn)?;
    drop(conn);
    let got = client.join().expect("client thread")?;
    if got != data {
        return Err("the client received different bytes".into());
    }
    println!(
        "serve_file: {} bytes by {}, identical",
        report.bytes,
        report.short()
    );
    Ok(())
}
