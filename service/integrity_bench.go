package service

// LeafBytesForBenchmark returns the record e's leaf hashes: the canonical
// leaf data of docs/integrity.md (e's fixed fields and the commitments to
// its erasable values under salts, as stored in integrity_leaves), built
// by the code Checkpoint and Verify use. It is for the benchmarks in
// bench/, which compare Verify's rate with plain SHA-256 over these bytes;
// nothing else calls it.
func LeafBytesForBenchmark(e *Event, salts []byte) []byte {
	return leafData(e, commitments(e, salts))
}
