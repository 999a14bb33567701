# Cython declarations for upstream.py, compiled with it (router/compiled.py); see exchange.pxd.

from router.exchange cimport Exchange
from router.flow cimport ReadGate

cdef int AWAITING, HEAD, BODY, ENDED, REUSABLE, RESPONDING, PEER_BUFFER_FULL, UPGRADE
cdef tuple RESPONSE_ALLOWED
cdef object CHUNKED, CLOSE, NONE, _FRAMING
cdef bytes _CRLF

cdef class UpstreamConnection:
    # per connection
    cdef public object pool, router, transport, parser, on_status, _guard
    cdef public ReadGate gate
    cdef public double idle_since
    cdef public list _reason
    cdef public Py_ssize_t _head_check
    # per exchange
    cdef public Exchange exchange
    cdef public object client_transport, _downstream, _upstream, _switching
    cdef public list _headers, _out
    cdef public int _state
    cdef public bytes _head
    cdef public bint _stray
    cdef public Py_ssize_t _unparsed, relayed

    cdef void _to(self, int state) except *
    cdef attach(self, Exchange exchange, client_transport)
    cpdef detach(self)
    cpdef close(self)
    cpdef handed_over(self)
    cdef _lost(self)
    cdef _bodiless(self, Exchange exchange, int status, list fields)
    cdef _message_done(self)
    cdef _interim(self, int status)
    cdef _switched(self, Exchange exchange, bytes from_dyno)
    cdef _refuse(self, Exchange exchange, error)
    cdef bint _growing(self, Exchange exchange) except -1
