//! Unit tests of the connection core: bytes and events in, intents out.
