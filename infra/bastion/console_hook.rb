# frozen_string_literal: true

# batchless console hook (issue 6): writes every command typed in a Rails console (IRB or Pry)
# on the bastion task as one JSON line, *before* it is evaluated, so that batchless
# `command-watch` sees it in real time (ECS Exec transcripts arrive only when a session ends and
# can be erased from inside the session).
#
#   {"batchless":"console-command","v":1,"taskId":"…","taskArn":"…","cluster":"…",
#    "container":"app","command":"User.destroy_all","time":"2026-11-28T13:00:00.123Z",
#    "pid":42,"lineNo":1}
#
# It also reports on itself, so that getting around it leaves a trace:
#
#   {"batchless":"console-heartbeat","v":1,"taskId":"…",…,"seq":3,"intervalSeconds":60}
#   {"batchless":"console-tamper","v":1,"taskId":"…",…,"what":"Batchless::ConsoleHook.emit was redefined"}
#   {"batchless":"console-end","v":1,"taskId":"…",…}   (once, at exit)
#
# A heartbeat every BATCHLESS_HOOK_HEARTBEAT_SECONDS (default 60; the first at install) from a
# thread of its own; batchless records the last one on the session. A tamper report when one of
# the hook's methods is redefined (at once, and at the next heartbeat, which also sees a
# redefined tamper hook), when
# IRB::Context#evaluate no longer goes through the hook first, or when BATCHLESS_CONSOLE_LOG is
# changed after start (the hook keeps writing where it started). Heartbeats and tamper reports are
# written through a writer bound at install, not through the methods they watch. A console that
# kills the thread stops the heartbeats: that gap is what batchless alerts on.
#
# Where the line goes: an ECS Exec session's own stdout is the operator's terminal, not the
# container's log driver, so the line is written to the stdout of the container's main process
# (`/proc/1/fd/1`), which awslogs ships to the console log group. `BATCHLESS_CONSOLE_LOG`
# overrides the destination (a file path, or `-` for this process's stdout).
#
# Install in the app:  config/initializers/batchless_console_hook.rb
#   Rails.application.console { require Rails.root.join("infra/bastion/console_hook").to_s }
# (or copy this file into lib/ and require it there). Plain `irb -r ./console_hook.rb` works too.

require "json"
require "net/http"
require "time"
require "uri"

module Batchless
  module ConsoleHook
    MAX_COMMAND_BYTES = 64 * 1024
    # The methods whose redefinition silences the hook.
    WATCHED = %i[emit write destination task_metadata fields singleton_method_added].freeze

    class << self
      def emit(code, line_no = nil)
        command = code.to_s.chomp
        return if command.strip.empty?

        command = command.byteslice(0, MAX_COMMAND_BYTES).scrub("?") if command.bytesize > MAX_COMMAND_BYTES
        line = fields("console-command").merge(
          "command" => command,
          "lineNo" => line_no.is_a?(Integer) ? line_no : nil
        ).compact
        write(JSON.generate(line))
      rescue StandardError => e
        # Never break the console; say so where the operator sees it.
        warn "batchless console hook: #{e.class}: #{e.message}"
      end

      def task_metadata
        @task_metadata ||= fetch_task_metadata
      end

      # The fields every line carries.
      def fields(kind)
        meta = task_metadata
        {
          "batchless" => kind,
          "v" => 1,
          "taskId" => meta[:task_id],
          "taskArn" => meta[:task_arn],
          "cluster" => meta[:cluster],
          "container" => meta[:container],
          "time" => Time.now.utc.iso8601(3),
          "pid" => Process.pid,
          "metadataError" => meta[:error]
        }.compact
      end

      # Install-time writer for heartbeats and tamper reports: bound to the destination and the
      # metadata as they were at install, so redefining write/destination/emit cannot reach it.
      def start_self_reporting
        return if @reporter

        out = destination
        base = fields("console-heartbeat").reject { |k, _| %w[batchless time].include?(k) }.freeze
        @reporter = lambda do |kind, extra|
          line = { "batchless" => kind }.merge(base).merge("time" => Time.now.utc.iso8601(3)).merge(extra)
          out.write("#{JSON.generate(line)}\n")
          out.flush
        rescue StandardError
          nil
        end.freeze
        reporter = @reporter
        # Bound once, so that redefining `method` or `instance_method` cannot blind the check.
        method_of = Object.instance_method(:method)
        instance_method_of = Module.instance_method(:instance_method)
        originals = WATCHED.to_h { |m| [m, method_of.bind_call(self, m).unbind] }
        started_log = ENV["BATCHLESS_CONSOLE_LOG"]
        interval = Integer(ENV.fetch("BATCHLESS_HOOK_HEARTBEAT_SECONDS", "60"), exception: false) || 60
        interval = 60 unless interval.positive?
        hook = self
        irb_patched = defined?(IRB::Context) && IRB::Context.ancestors.include?(IrbContextPatch)
        @heartbeat = Thread.new do
          seq = 0
          reported = {}
          loop do
            seq += 1
            begin
              problems = originals.filter_map do |m, orig|
                "Batchless::ConsoleHook.#{m} was redefined" if method_of.bind_call(hook, m).unbind != orig
              end
              owner = irb_patched && instance_method_of.bind_call(IRB::Context, :evaluate).owner
              if owner && owner != IrbContextPatch
                problems << "IRB::Context#evaluate no longer goes through the hook first (#{owner})"
              end
              now_log = ENV["BATCHLESS_CONSOLE_LOG"]
              if now_log != started_log
                problems << "BATCHLESS_CONSOLE_LOG changed from #{started_log.inspect} to #{now_log.inspect} " \
                            "(the hook keeps writing where it started)"
              end
              problems.each do |what|
                next if reported[what] == seq - 1 # said at the previous beat: once per stretch

                reporter.call("console-tamper", "what" => what)
              ensure
                reported[what] = seq
              end
            rescue StandardError => e
              # The self-check itself broken (a method it relies on replaced): that is tampering too.
              reporter.call("console-tamper", "what" => "the hook's self-check failed: #{e.class}: #{e.message}")
            end
            reporter.call("console-heartbeat", "seq" => seq, "intervalSeconds" => interval)
            sleep interval
          end
        end
        @heartbeat.report_on_exception = false
        # The console's end, said once at exit: the silence after it is not a gap (hook-watch).
        at_exit { reporter.call("console-end", {}) }
      end

      # A method of the hook redefined after install: said at once (the heartbeat says it again
      # if this hook itself is replaced).
      def singleton_method_added(name)
        super
        return unless @reporter && WATCHED.include?(name)

        @reporter.call("console-tamper", "what" => "Batchless::ConsoleHook.#{name} was redefined")
      end

      def reset!
        @task_metadata = nil
        @out = nil
      end

      private

      def fetch_task_metadata
        base = ENV["ECS_CONTAINER_METADATA_URI_V4"].to_s
        return { task_id: "unknown", error: "ECS_CONTAINER_METADATA_URI_V4 is not set" } if base.empty?

        task = get_json("#{base}/task")
        container = get_json(base)
        arn = task["TaskARN"].to_s
        {
          task_id: arn.split("/").last || "unknown",
          task_arn: arn,
          cluster: task["Cluster"].to_s.split("/").last,
          container: container["Name"]
        }
      rescue StandardError => e
        { task_id: "unknown", error: "task metadata: #{e.class}: #{e.message}" }
      end

      def get_json(url)
        uri = URI(url)
        res = Net::HTTP.start(uri.host, uri.port, open_timeout: 1, read_timeout: 1) do |http|
          http.get(uri.request_uri.empty? ? "/" : uri.request_uri)
        end
        raise "HTTP #{res.code} from #{url}" unless res.is_a?(Net::HTTPSuccess)

        JSON.parse(res.body)
      end

      def write(json)
        out = destination
        out.write("#{json}\n")
        out.flush
      end

      def destination
        return @out if @out

        target = ENV.fetch("BATCHLESS_CONSOLE_LOG", "/proc/1/fd/1")
        @out =
          if target == "-"
            $stdout
          elsif target == "/proc/1/fd/1" && Process.pid == 1
            $stdout
          else
            begin
              File.open(target, "a")
            rescue SystemCallError
              $stdout
            end
          end
      end
    end

    # IRB: every statement passes through IRB::Context#evaluate (irb 1.4 passes the source
    # string; irb >= 1.13 passes an IRB::Statement with #code).
    module IrbContextPatch
      def evaluate(statement, line_no = nil, *rest, **kw)
        code = statement.respond_to?(:code) ? statement.code : statement
        Batchless::ConsoleHook.emit(code, line_no)
        super
      end
    end

    def self.install
      if defined?(IRB::Context) && !IRB::Context.ancestors.include?(IrbContextPatch)
        IRB::Context.prepend(IrbContextPatch)
      end
      if defined?(Pry) && Pry.respond_to?(:hooks)
        Pry.hooks.add_hook(:before_eval, :batchless_console_hook) { |code, _pry| emit(code) }
      end
      start_self_reporting
      true
    end
  end
end

Batchless::ConsoleHook.install
