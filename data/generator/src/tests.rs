use std::collections::{BTreeMap, BTreeSet};

use super::*;

fn tiny() -> Config {
    Config::new(200, 300, 6_000)
}

fn gen(cfg: &Config) -> (Vec<u8>, Summary) {
    let mut out = Vec::new();
    let s = generate(cfg, &mut out, None).unwrap();
    (out, s)
}

fn gen_holdout(cfg: &Config) -> (Vec<u8>, Vec<u8>, Summary) {
    let (mut out, mut held) = (Vec::new(), Vec::new());
    let s = generate(cfg, &mut out, Some(&mut held)).unwrap();
    (out, held, s)
}

/// Parses DSSTNE text rows into user -> items (values must parse as integers).
fn parse_text(bytes: &[u8]) -> BTreeMap<u64, Vec<u64>> {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let (user, feats) = line.split_once('\t').expect("a TAB");
        let items: Vec<u64> = feats
            .split(':')
            .map(|f| {
                let mut p = f.split(',');
                let item = p.next().unwrap().parse().unwrap();
                if let Some(v) = p.next() {
                    v.parse::<u64>().unwrap();
                }
                assert!(p.next().is_none());
                item
            })
            .collect();
        assert!(
            rows.insert(user.parse().unwrap(), items).is_none(),
            "duplicate user"
        );
    }
    rows
}

fn parse_lists(bytes: &[u8]) -> BTreeMap<u64, Vec<u64>> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines()
        .map(|l| {
            let mut it = l.split(' ').map(|x| x.parse::<u64>().unwrap());
            (it.next().unwrap(), it.collect())
        })
        .collect()
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, _) = gen(&tiny());
    let (b, _) = gen(&tiny());
    assert_eq!(a, b);
    let (c, _) = gen(&Config { seed: 43, ..tiny() });
    assert_ne!(a, c);
}

#[test]
fn thread_count_does_not_change_output() {
    // Enough users for several chunks per thread.
    let cfg = Config::new(5_000, 2_000, 100_000);
    let (a, sa) = gen(&cfg);
    let (b, sb) = gen(&Config {
        threads: 3,
        ..cfg.clone()
    });
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}

#[test]
fn counts_and_unique_items_per_row() {
    let cfg = tiny();
    let (out, s) = gen(&cfg);
    let rows = parse_text(&out);
    assert_eq!(rows.len(), 200);
    assert_eq!(s.entries, 6_000);
    assert_eq!(s.holdout_entries, 0);
    assert_eq!(rows.values().map(Vec::len).sum::<usize>(), 6_000);
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (1..=200).collect::<Vec<_>>()
    );
    for items in rows.values() {
        assert!(!items.is_empty());
        let set: BTreeSet<_> = items.iter().collect();
        assert_eq!(set.len(), items.len(), "duplicate item in a row");
        assert!(items.iter().all(|&i| (1..=300).contains(&i)));
    }
}

#[test]
fn large_counts_are_exact() {
    let cfg = Config {
        min_per_user: 20,
        ..Config::new(3_000, 1_500, 400_001)
    };
    let (out, s) = gen(&Config {
        format: Format::Lists,
        ..cfg
    });
    let rows = parse_lists(&out);
    assert_eq!(s.entries, 400_001);
    assert_eq!(rows.values().map(Vec::len).sum::<usize>(), 400_001);
    assert!(rows.values().all(|r| r.len() >= 20 && r.len() <= 1_500));
    assert!(rows
        .values()
        .all(|r| r.iter().collect::<BTreeSet<_>>().len() == r.len()));
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        (0..3_000).collect::<Vec<_>>()
    );
    assert!(rows.values().flatten().all(|&i| i < 1_500));
}

#[test]
fn popularity_is_skewed() {
    let cfg = Config::new(2_000, 5_000, 100_000);
    let (out, s) = gen(&cfg);
    let mut counts = vec![0u64; 5_000];
    for items in parse_text(&out).values() {
        for &i in items {
            counts[i as usize - 1] += 1;
        }
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: u64 = counts[..50].iter().sum();
    let share = top as f64 / 100_000.0;
    // Uniform popularity would give 1%.
    assert!(
        share > 0.15,
        "top 1% of items hold only {share:.3} of entries"
    );
    assert!((share - s.top1pct_share).abs() < 1e-12);
    // And the tail is long: the least popular half of the items holds little.
    let bottom: u64 = counts[2_500..].iter().sum();
    assert!((bottom as f64) < 0.2 * 100_000.0);
}

#[test]
fn history_lengths_are_skewed() {
    let (out, s) = gen(&Config::new(2_000, 5_000, 100_000));
    let mut lens: Vec<usize> = parse_text(&out).values().map(Vec::len).collect();
    lens.sort_unstable();
    assert_eq!(lens[lens.len() / 2] as u32, s.median_history);
    assert!(
        s.median_history < 50,
        "median {} vs mean 50",
        s.median_history
    );
    assert!(s.max_history > 300);
}

#[test]
fn holdout_splits_each_history() {
    let cfg = Config {
        holdout: 0.2,
        ..tiny()
    };
    let (train, held, s) = gen_holdout(&cfg);
    let (full, _) = gen(&tiny());
    let (train, held, full) = (parse_text(&train), parse_text(&held), parse_text(&full));
    assert_eq!(s.entries + s.holdout_entries, 6_000);
    assert!(
        s.holdout_entries > 1_000 && s.holdout_entries < 1_400,
        "{}",
        s.holdout_entries
    );
    assert_eq!(train.len(), 200);
    for (u, items) in &full {
        let t = &train[u];
        assert!(!t.is_empty());
        let h = held.get(u).cloned().unwrap_or_default();
        let expected = ((items.len() as f64 * 0.2).round() as usize).min(items.len() - 1);
        assert_eq!(h.len(), expected);
        let mut joined = t.clone();
        joined.extend(&h);
        assert_eq!(
            &joined, items,
            "train + held-out is the full history of user {u}"
        );
    }
}

#[test]
fn formats() {
    let (text, _) = gen(&Config {
        values: false,
        ..tiny()
    });
    let first = std::str::from_utf8(&text)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(first.starts_with("1\t") && !first.contains(','), "{first}");

    let (lists, _) = gen(&Config {
        format: Format::Lists,
        ..tiny()
    });
    let (text, _) = gen(&tiny());
    // The same data, 0-based in lists and 1-based in text.
    let shifted: BTreeMap<u64, Vec<u64>> = parse_lists(&lists)
        .into_iter()
        .map(|(u, is)| (u + 1, is.into_iter().map(|i| i + 1).collect()))
        .collect();
    assert_eq!(shifted, parse_text(&text));

    let (csv, _) = gen(&Config {
        format: Format::Csv,
        ..tiny()
    });
    let csv = String::from_utf8(csv).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("userId,movieId,rating,timestamp"));
    let mut n = 0;
    let mut last: Option<(u64, u64)> = None;
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        assert_eq!(f.len(), 4);
        let (u, t): (u64, u64) = (f[0].parse().unwrap(), f[3].parse().unwrap());
        let r: f64 = f[2].parse().unwrap();
        assert!((0.5..=5.0).contains(&r) && (r * 2.0).fract() == 0.0);
        if let Some((lu, lt)) = last {
            assert!(
                u > lu || (u == lu && t > lt),
                "rows grouped by user, time increasing"
            );
        }
        last = Some((u, t));
        n += 1;
    }
    assert_eq!(n, 6_000);
}

#[test]
fn bad_arguments_are_explained() {
    let err = |c: Config| generate(&c, &mut Vec::new(), None).unwrap_err().to_string();
    assert!(err(Config::new(10, 10, 101)).contains("more than --users × --items"));
    assert!(err(Config::new(10, 10, 9)).contains("less than --users × --min-per-user"));
    assert!(err(Config::new(0, 10, 9)).contains("--users"));
    assert!(err(Config {
        holdout: 1.0,
        ..tiny()
    })
    .contains("--holdout"));
    assert!(err(Config {
        holdout: 0.1,
        ..tiny()
    })
    .contains("--holdout-output"));
    assert!(err(Config {
        zipf_exponent: f64::NAN,
        ..tiny()
    })
    .contains("--zipf-exponent"));
    assert!(err(Config {
        format: Format::Csv,
        values: false,
        ..tiny()
    })
    .contains("--no-values"));
    let capped = Config {
        max_per_user: Some(5),
        ..Config::new(10, 10, 51)
    };
    assert!(err(capped).contains("--max-per-user"));
    assert!(err(Config {
        max_per_user: Some(301),
        ..tiny()
    })
    .contains("--max-per-user"));
    // The extreme feasible cases work.
    let (out, s) = gen(&Config {
        max_per_user: Some(5),
        ..Config::new(10, 10, 50)
    });
    assert_eq!(s.max_history, 5);
    assert!(parse_text(&out).values().all(|r| r.len() == 5));
    assert_eq!(gen(&Config::new(10, 10, 100)).1.entries, 100);
    assert_eq!(gen(&Config::new(10, 10, 10)).1.entries, 10);
}
