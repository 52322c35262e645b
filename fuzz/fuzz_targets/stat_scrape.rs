//! Feeds an arbitrary HTTP response to what `corelane stat` does with a
//! scrape: the body of a 200 answer, the Prometheus samples in it, the
//! samples grouped by core, and the view between two scrapes. None of it
//! may panic or allocate on the response's say-so, and every sample read
//! back must have a name that starts with a letter, `_` or `:`.
//!
//! Input layout: the whole response, also used as the second scrape with
//! its first byte's worth of seconds between the two.

#![no_main]

use corelane::metrics::{scrape, stat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(response) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(body) = stat::response_body(response) else {
        return;
    };
    let Ok(samples) = scrape::parse(body) else {
        return;
    };
    for sample in &samples {
        assert!(
            sample
                .name
                .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_' || c == ':'),
            "{:?}",
            sample.name
        );
    }
    let cores = stat::by_core(&samples);
    // `by_core` refuses core labels from 4096 up.
    assert!(cores.len() <= 4096);
    let seconds = f64::from(data.first().copied().unwrap_or(0));
    let view = stat::render(&[], &cores, seconds);
    // A header line, then one line per core.
    assert_eq!(view.lines().count(), cores.len() + 1);
});
