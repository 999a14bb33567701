# Cython declarations for client.py, compiled with it (router/compiled.py); see exchange.pxd.

from router.downstream cimport Downstream
from router.exchange cimport Exchange
from router.flow cimport ReadGate

cdef int OPEN, REFUSING, LINGERING, CLOSING, TUNNEL, DONE
cdef int PEER_BUFFER_FULL, PIPELINED, UPGRADING, UPGRADE
cdef tuple CLIENT_ALLOWED
cdef object CHUNKED
cdef bytes _CONNECT
cdef int _SLASH, _HASH
cdef double _LINGER, _LINGER_TOTAL

cdef class ClientConnection(Downstream):
    # per connection (transport, gate, write_paused, deadline and log: Downstream's)
    cdef public object router, listener, rewriter, parser, _queue, _guard, _error_after
    cdef public bytes peer
    cdef public object _early  # bytes (left untyped: it comes from slicing whatever was read)
    cdef public int _state
    cdef public double _linger_end
    cdef public Py_ssize_t _head_check
    cdef public object _upgrade_body
    # what the parser holds
    cdef public Py_ssize_t _unparsed, _read_size, _head_start
    # per request being parsed
    cdef public object on_url, on_message_begin, _line, _mid
    cdef public list _url, _headers, _marks
    cdef public Exchange _reading
    # the request being answered
    cdef public Exchange _serving

    cpdef exchange_done(self, Exchange exchange)
    cpdef router_answer(self, Exchange exchange, error)
    cpdef response_interrupted(self, Exchange exchange, error)
    cpdef handed_over(self)
    cpdef take_early_data(self)
    cdef bint _head_begun(self) except -1
    cdef void _to(self, int state) except *
    cdef _head_continues(self, data)
    cdef _check_request_line(self, method, target)
    cdef _upgrade_requested(self, early)
    cdef _upgrade_body_follows(self, data)
    cdef _upgrade_declined(self)
    cdef bint _growing(self) except -1
    cdef _close(self)
    cdef _linger(self)
    cdef _drop_queue(self)
    cdef _answer_unrouted(self, error)
    cdef _after_last(self)
