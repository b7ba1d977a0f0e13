package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"strings"
)

// writeMemClasses writes the runtime's memory classes (runtime/metrics
// /memory/classes/...) and the goroutine count: where the process's mapped
// memory goes beyond the heap (goroutine stacks, runtime metadata, free
// pages), with -xds-heapprofile.
func writeMemClasses(w io.Writer) {
	var samples []metrics.Sample
	for _, d := range metrics.All() {
		if strings.HasPrefix(d.Name, "/memory/classes/") || d.Name == "/sched/goroutines:goroutines" || d.Name == "/gc/gogc:percent" || d.Name == "/gc/gomemlimit:bytes" {
			samples = append(samples, metrics.Sample{Name: d.Name})
		}
	}
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			fmt.Fprintf(w, "%-60s %d\n", s.Name, s.Value.Uint64())
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(w, "%-60s %d\n", "MemStats.StackInuse", ms.StackInuse)
	fmt.Fprintf(w, "%-60s %d\n", "MemStats.HeapInuse", ms.HeapInuse)
	fmt.Fprintf(w, "%-60s %d\n", "MemStats.HeapAlloc", ms.HeapAlloc)
	fmt.Fprintf(w, "%-60s %d\n", "MemStats.Sys", ms.Sys)
	fmt.Fprintf(w, "%-60s %d\n", "runtime.NumGoroutine", runtime.NumGoroutine())
}
