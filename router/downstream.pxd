# Cython declarations for downstream.py, compiled with it (router/compiled.py); see
# exchange.pxd. ClientConnection (client.pxd) derives from this; the HTTP/2 stream, a Python
# class, too, which is why the methods are cpdef (a Python subclass can override those only).

from router.exchange cimport Exchange
from router.flow cimport ReadGate

cdef class Downstream:
    cdef public object transport
    cdef public ReadGate gate
    cdef public bint write_paused
    cdef public double deadline
    cdef public object log

    cpdef void move_deadline(self, double when) except *
    cpdef exchange_done(self, Exchange exchange)
    cpdef router_answer(self, Exchange exchange, error)
    cpdef response_interrupted(self, Exchange exchange, error)
    cpdef handed_over(self)
    cpdef take_early_data(self)
