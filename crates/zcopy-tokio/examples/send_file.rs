//! Serve a file to a tokio `TcpStream` by sendfile(2), and receive it into a file
//! by splice(2), on one tokio thread; checks the bytes.
//!
//! ```text
//! cargo run -p zcopy-tokio --example send_file
//! ```

use std::io::{Read, Seek, Write};

use tokio::net::{TcpListener, TcpStream};
use zcopy::CopyOptions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i * 29 + i / 8191) as u8).collect();
    let mut src = tempfile::tempfile()?;
    src.write_all(&data)?;
    let mut dst = tempfile::tempfile()?;

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let client = TcpStream::connect(listener.local_addr()?).await?;
    let (server, _) = listener.accept().await?;

    // Both ends on this one thread: each waits for its socket through tokio.
    let sending = async {
        let r = zcopy_tokio::send_file(&src, &server, &CopyOptions::new().offset(0)).await;
        drop(server);
        r
    };
    let recv_opts = CopyOptions::new();
    let receiving = zcopy_tokio::recv_to_file(&client, &dst, &recv_opts);
    let (sent, received) = tokio::try_join!(sending, receiving)?;

    let mut got = Vec::new();
    dst.rewind()?;
    dst.read_to_end(&mut got)?;
    if got != data {
        return Err("the received file differs".into());
    }
    println!(
        "send_file: {} bytes by {}, received by {}, identical",
        sent.bytes,
        sent.short(),
        received.short()
    );
    Ok(())
}
