# Cython declarations for pool.py, compiled with it (router/compiled.py): the exchange reads a
# dyno's pool and an app's backend as C struct members (see exchange.pxd).

from router.metrics cimport AppMetrics

cdef class DynoPool:
    cdef public object app, dyno, host, port, log_name, recent
    cdef public long in_flight, max_idle, peak
    cdef public list idle
    cdef public bint retired

    cpdef take(self)
    cpdef give_back(self, conn, double now)


cdef class AppBackend:
    cdef public object route, backlog, challenges, affinity
    cdef public tuple pools
    cdef public AppMetrics metrics
    cdef public list waiters
    cdef public double request_timeout
    cdef public Py_ssize_t max_body
    cdef public long max_in_flight
