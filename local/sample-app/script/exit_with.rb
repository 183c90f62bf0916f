# bin/rails runner script/exit_with.rb N: exits with N (after saying so).
code = Integer(ARGV.first || 1)
warn "script/exit_with.rb: exiting with #{code}"
exit code
