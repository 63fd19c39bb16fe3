package pollers

import (
	"github.com/gridstream/gridstream/internal/publish"
)

// Job is one (source, dataset, partition): the unit that is scheduled, leased and has a
// cursor.
type Job struct {
	Dataset   *Dataset
	Partition Partition
	// Fetcher is the source's HTTP client for this job (shared by the jobs of one upstream
	// or one end user).
	Fetcher Fetcher
	// Pressure, if set, reports how much of the upstream's quota is used (0..1), so the
	// scheduler slows this job's cadence before the limit is hit.
	Pressure func() float64
}

// ID is the job's stable identity: the subject tokens below the prefix, e.g.
// "ingrid.operational-notices.abc123". It is the key of its cursor and lease.
func (j *Job) ID() string {
	return publish.EscapeToken(j.Dataset.Source) + "." + publish.EscapeToken(j.Dataset.Name) + "." + publish.EscapeToken(j.Partition.ID)
}
