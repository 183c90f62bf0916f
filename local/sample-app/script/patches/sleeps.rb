# bin/rails runner script/patches/sleeps.rb S: S seconds in Ruby (a patch slower than its time limit).
puts "sleeping #{ARGV.fetch(0)}s"
sleep Float(ARGV.fetch(0))
puts "woke up"
