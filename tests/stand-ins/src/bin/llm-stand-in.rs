//! `llm-stand-in [--delay-ms N]`: the Messages API stand-in as a process (for trying the
//! gateway by hand). Prints `READY <url>` and serves until killed.

use std::time::Duration;

fn main() {
    let mut delay = Duration::ZERO;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--delay-ms" {
            delay = Duration::from_millis(args.next().and_then(|v| v.parse().ok()).unwrap_or(0));
        }
    }
    let api = loop_gateway_stand_ins::MessagesApi::start_with_workers(1);
    api.set_recording(false);
    api.set_delay(delay);
    println!("READY {}", api.url);
    loop {
        std::thread::park();
    }
}
