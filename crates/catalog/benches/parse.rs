//! Start-up cost of the shipped catalogue: decompressing and parsing the embedded us-east-1 data,
//! and building the full catalogue (capacity, overhead, labels, offerings) from it. The figures are
//! recorded in `benches/README.md`; nothing asserts on them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code fails loudly by design

use criterion::{Criterion, criterion_group, criterion_main};
use nodewright_catalog::{Catalog, NodeSettings, RegionData};

fn parse(c: &mut Criterion) {
    c.bench_function("catalog/parse_embedded_us_east_1", |b| {
        b.iter(|| RegionData::us_east_1().expect("embedded data parses"));
    });
    let data = RegionData::us_east_1().expect("embedded data parses");
    let settings = NodeSettings::default();
    c.bench_function("catalog/build_from_parsed", |b| {
        b.iter(|| Catalog::from_records(&data, &settings).expect("embedded data builds"));
    });
    c.bench_function("catalog/us_east_1_total", |b| {
        b.iter(|| Catalog::us_east_1(&settings).expect("embedded data builds"));
    });
}

criterion_group!(benches, parse);
criterion_main!(benches);
