# Says which database a migration talks to. It prints DATABASE_URL as careless apps do, password
# and all: batchless must redact it from everything that leaves the system (tested).
task "db:banner" do
  puts "Connecting to #{ENV.fetch('DATABASE_URL', '(config/database.yml)')}"
end
Rake::Task["db:migrate"].prerequisites.unshift("db:banner") if Rake::Task.task_defined?("db:migrate")
