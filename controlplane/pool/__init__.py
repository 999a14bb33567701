"""The VM pool: a provider that starts and stops VMs (`local`: the agents that register;
`ec2`: EC2 instances through aioboto3), a pure sizing policy (`policy`), and the loop the
scheduling leader runs (`manager`)."""
