//! The benchmark's short mode as a smoke check: every phase runs against the real binary and
//! reports a figure. Timings are printed, never asserted.

#[test]
fn the_benchmark_runs_end_to_end_in_short_mode() {
    let opts = loop_gateway_bench::Options {
        gateway: crate::common::BIN.into(),
        quick: true,
        ..Default::default()
    };
    let report = loop_gateway_bench::run(&opts).expect("benchmark");
    println!("{}", report.table());
    for name in [
        "exec to healthy",
        "idle RSS",
        "added latency per sync run, c=1, p50",
        "added latency with a tool round",
        "SQLite statements per run",
        "sync webhook runs/s",
        "WebSocket events delivered/s",
        "runs waiting on a",
    ] {
        let f = report
            .figures
            .iter()
            .find(|f| f.name.contains(name))
            .unwrap_or_else(|| panic!("no figure for {name}"));
        assert!(f.value.is_finite(), "{name}: {}", f.value);
    }
    assert!(report.json().contains("\"figures\""));
}
