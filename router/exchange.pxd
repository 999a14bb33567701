# Cython declarations for exchange.py, compiled with it (router/compiled.py). With client.pxd and
# upstream.pxd, the three classes of the request path are extension types that reach each other's
# fields as C struct members and call each other's methods as C functions; the `.py` stays the
# source and the pure-Python twin. Keep these in step with the classes' __slots__.

cimport cython

from router.downstream cimport Downstream
from router.flow cimport ReadGate
from router.metrics cimport AppMetrics, Histogram
from router.pool cimport AppBackend, DynoPool
from router.upstream cimport UpstreamConnection

cdef int QUEUED, CONNECTING, FORWARDING, RESPONDING, DONE
cdef int AWAITING_DYNO, PEER_BUFFER_FULL, EXPECT_CONTINUE
cdef tuple PHASE_ALLOWED
cdef object CHUNKED, LENGTH, NONE, _RUNNING
cdef bytes _CONTINUE, _CRLF
cdef double _NEVER

cdef class Exchange:
    # fixed at creation
    cdef public Downstream client  # an HTTP/1.1 connection, or an HTTP/2 stream
    cdef public object router, method, target, host, framing
    cdef public bytes head, request_id, fwd
    cdef public bint is_head, http11
    cdef public double start, wall
    cdef public int flags
    # routing
    cdef public object route, tried, failure, connecting
    cdef public AppBackend backend
    cdef public DynoPool pool
    cdef public bint retried
    # the app's backlog
    cdef public double queued_at
    cdef public bytes queue_note
    # progress
    cdef public int phase, status
    cdef public UpstreamConnection upstream
    cdef public list pending
    cdef public bint request_complete, keep_alive, reused
    cdef public long connect_ms
    cdef public double sent_at
    cdef public Py_ssize_t nbytes
    cdef public Py_ssize_t body_seen

    cdef void _move(self, int to) except *
    @cython.locals(backend=AppBackend, metrics=AppMetrics)
    cpdef dispatch(self)
    cdef bint _answer_challenge(self, dict challenges) except -1
    @cython.locals(pool=DynoPool, conn=UpstreamConnection, in_flight=long)
    cdef _attempt(self)
    cdef bint _over_limit(self) except -1
    cdef _pinned(self)
    cpdef affinity_cookie(self, bytes head)
    cdef _connect(self, DynoPool pool)
    @cython.locals(sent_at=double)
    cdef _attach(self, UpstreamConnection conn)
    @cython.locals(seen=Py_ssize_t, backend=AppBackend)
    cpdef request_body(self, data)
    cpdef request_ended(self, list trailers)
    cpdef flush_request(self)  # cpdef: the HTTP/2 stream (a Python class) calls it too
    cdef _wait_for_boot(self)
    cpdef booted(self, route)
    cdef _wait_for_room(self, AppBackend backend)
    cpdef left_backlog(self, double waited)
    cpdef expire(self, double now)
    cpdef response_began(self, int status, bint keep_alive)
    cdef head_withheld(self)
    cdef relaying(self)
    cdef stop_keeping_alive(self)
    @cython.locals(conn=UpstreamConnection, pool=DynoPool, backend=AppBackend,
                   metrics=AppMetrics, histogram=Histogram, now=double, service=double)
    cpdef finish(self, bint reusable, bytes note=*)
    cpdef fail(self, error)
    cdef upgraded(self, UpstreamConnection conn, bytes from_dyno)
    cdef upstream_lost(self, UpstreamConnection conn, bint got_bytes)
    cpdef client_lost(self)
    cpdef log_error(self, error, int status)
    cdef _release(self)
    cdef peer_buffer_full(self, bint full)
