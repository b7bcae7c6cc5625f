//! Integration tests: the real server on 127.0.0.1:0, real clients (ureq, raw TCP,
//! curl and wget when installed).

mod util;

mod access;
mod archive;
mod auth;
mod compress;
mod crossclient;
mod driver;
mod files;
mod framing;
mod h2;
mod h2_data;
mod h2_upload;
mod http_details;
mod lending;
mod listing;
mod metrics;
mod peers;
mod protocol;
mod resume;
mod rules;
mod security;
mod sidecars;
mod tls;
mod tools;
mod upload;
mod upload_metrics;
mod webdav;
