//! Pick cost with 3, 100 and 10,000 endpoints.
//!
//! ```text
//! cargo bench -p lookaside-client --bench pick
//! ```

#![allow(missing_docs, clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use lookaside_client::balance::Picker;
use std::hint::black_box;

fn pick(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for endpoints in [3usize, 100, 10_000] {
        // Uneven weights, as a load-driven policy would produce.
        let picker =
            Picker::new((0..endpoints).map(|i| 1 + (i as u32 * 7919) % 10_000)).expect("picker");
        group.bench_with_input(
            BenchmarkId::from_parameter(endpoints),
            &picker,
            |b, picker| {
                b.iter(|| black_box(picker.pick()));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, pick);
criterion_main!(benches);
