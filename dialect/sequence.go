package dialect

// PendingPartitionsParams are the arguments of PendingPartitions.
type PendingPartitionsParams struct {
	Limit int
}

// PendingPartitionsResult lists partitions with unsequenced messages.
type PendingPartitionsResult struct {
	PartitionIDs []int64
}

// SequencePartitionsParams are the arguments of SequencePartitions.
type SequencePartitionsParams struct {
	PartitionIDs []int64 // distinct
	Limit        int     // most rows per partition
}

// SequencePartitionsResult has one entry per partition, in the order of
// PartitionIDs (SequencePartitions) or of partition id (SequencePending).
type SequencePartitionsResult struct {
	Partitions []SequencedPartition
}

// SequencedPartition is one partition's part of a sequencing call.
type SequencedPartition struct {
	PartitionID int64
	Locked      bool  // false: another sequencer held the partition; nothing done
	Assigned    int   // rows given a seq
	LastSeq     int64 // the partition's counter afterwards
}

// SequencePendingParams are the arguments of SequencePending.
type SequencePendingParams struct {
	FromPartitionID int64 // the lowest partition id considered
	MaxPartitions   int   // most partitions found and tried
	Limit           int   // most rows in total, shared evenly by the partitions found
}

// ReadPartitionsParams are the arguments of ReadPartitions: one read per
// partition, partitions distinct.
type ReadPartitionsParams struct {
	Reads []PartitionRead
}

// ReadPartitionsResult has the messages of each read, in the order of
// Reads, each in seq order.
type ReadPartitionsResult struct {
	Messages [][]Message
}

// LockCursorParams are the arguments of LockCursor.
type LockCursorParams struct {
	Queue     string
	Partition int
}

// LockCursorResult is a locked cursor row's state.
type LockCursorResult struct {
	PartitionID  int64
	ProcessedSeq int64
	LastSeq      int64
	Attempts     int
	LastError    string
	// Blocked reports blocked_at IS NOT NULL.
	Blocked bool
}
