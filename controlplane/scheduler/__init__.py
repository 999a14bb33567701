"""Scheduling: formation -> dynos on VMs. Pure policies (`placement`, `planner`, `takeout`,
`liveness`), the transaction-side reads and writes (`fleet`), and the `FormationScheduler`."""
