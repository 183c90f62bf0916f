# What every rake task and runner script of the sample app does around its real work: says what
# runs with which arguments, records it in task_runs, and honours the replica's fault injection
# (FAKE_SLEEP_SECONDS=N: the work takes N more seconds; FAKE_EXIT_CODE=N: it then fails with N).
module SampleApp
  module Work
    module_function

    # `bin/rake NAME a b`: rake would take a and b for task names; they are this task's arguments.
    def rake_args(name)
      args = ARGV.drop_while { |a| a != name }.drop(1)
      args.each { |a| Rake::Task.define_task(a) {} unless Rake::Task.task_defined?(a) }
      args
    end

    def run(what, args)
      puts "Running #{what}"
      puts "Arguments: #{args.join(' ')}"
      $stdout.flush
      result = yield
      seconds = ENV.fetch("FAKE_SLEEP_SECONDS", "0").to_f
      if seconds.positive?
        puts "working for #{ENV['FAKE_SLEEP_SECONDS']}s ..."
        $stdout.flush
        sleep seconds
      end
      code = ENV.fetch("FAKE_EXIT_CODE", "0").to_i
      if code != 0
        warn "#{what.sub(/\Atask: /, 'rake ').sub(/\Ascript: /, 'runner ')} failed"
        exit code
      end
      puts "done."
      result
    end

    def record(name, args)
      TaskRun.create!(name: name, arguments: Array(args).join(" "), source: ENV.fetch("BATCHLESS_PATCH_ID", "batch"))
    end
  end
end
