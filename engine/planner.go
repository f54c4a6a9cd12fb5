package engine

// PlanMailbox is the pure planner: previous state + what each side reports → actions + new state.
// No I/O, deterministic, never panics on any input.
func PlanMailbox(st State, far, near Report, opt Options) Plan {
	var p Plan
	p.State = st
	return p
}
