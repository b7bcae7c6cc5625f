//! zcopy-http: a static HTTP/1.1 file server that sends from page cache to socket.
#![forbid(unsafe_code)]
