package lab

// PID is the host PID of node n's QEMU process (0 when it is stopped).
func (l *Lab) PID(n int) int { return l.mustNode(n).PID }
