fn main() {
    println!("paxos");
}
