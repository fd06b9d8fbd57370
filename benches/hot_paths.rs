//! Criterion benches for the request hot paths. Inputs are built outside the timed loops.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use oxitraffic::routes::Routes;

fn route_matching(c: &mut Criterion) {
    let routes = Routes::new();
    let mut group = c.benchmark_group("routes");
    group.bench_function("hit", |b| {
        b.iter(|| routes.at(black_box("/health")).is_some())
    });
    let miss = format!("/{}", "a/".repeat(200));
    group.bench_function("long_miss", |b| {
        b.iter(|| routes.at(black_box(&miss)).is_none())
    });
    group.finish();
}

criterion_group!(benches, route_matching);
criterion_main!(benches);
