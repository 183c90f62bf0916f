# A runner script that runs long: SECONDS (default 30) of real work, one row touched per second.
seconds = Integer(ARGV.first || 30)
SampleApp::Work.run("script: script/long_running.rb", ARGV) do
  seconds.times do |i|
    User.where(id: User.minimum(:id)).update_all(updated_at: Time.current)
    puts "tick #{i + 1}/#{seconds}"
    $stdout.flush
    sleep 1
  end
end
