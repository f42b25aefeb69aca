fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args[1].parse().unwrap();
    let f: usize = args[2].parse().unwrap();
    let seed: u64 = args[3].parse().unwrap();
    let mut config = vanna_sim::SimConfig::new(n, f);
    config.partitions = args.get(4).is_some_and(|a| a.contains('p'));
    config.crashes = args.get(4).is_some_and(|a| a.contains('c'));
    if args.get(4).is_some_and(|a| a.contains('e')) {
        config.epoch_length = Some(5);
    }
    let t = std::time::Instant::now();
    let r = vanna_sim::run_seed(&config, seed);
    println!("{:?} {:?}", r, t.elapsed());
}
