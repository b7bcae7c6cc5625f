//! Integration tests: the real server on 127.0.0.1:0, real clients (ureq, raw TCP,
//! curl and wget when installed).

mod util;

mod driver;
mod files;
mod protocol;
mod security;
mod tools;
