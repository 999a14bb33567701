# Cython declarations for metrics.py, compiled with it (router/compiled.py): the request path
# bumps an app's counters and histograms as C struct members (see exchange.pxd).

cdef class Histogram:
    cdef public tuple bounds
    cdef public list counts
    cdef public double total

    cpdef observe(self, double value)


cdef class AppMetrics:
    cdef public object app
    cdef public long in_flight, queued
    cdef public dict statuses, errors
    cdef public Histogram connect, service, queue_wait
