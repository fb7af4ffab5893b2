//! Sources of export datagrams for the workers. Sources know sockets and buffers, never
//! protocols: the XDP-fed ones ([`xsk`], [`perf`]) find each frame's UDP payload with the shared
//! classifier and lend it, with the exporter's address, to the caller.

pub mod perf;
pub mod rx_queues;
pub mod xsk;
