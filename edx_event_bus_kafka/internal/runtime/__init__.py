"""What every process needs around the loop: exit codes and signals, heartbeat, monitoring, audit lines, logs."""
